"""recbole-adt: Adaptive Denoising Training (T-CE, R-CE) for RecBole recommenders.

Paper: Wenjie Wang, Fuli Feng, Xiangnan He, Liqiang Nie, Tat-Seng Chua. "Learning Robust
Recommender from Noisy Implicit Feedback." (TKDE; extends "Denoising Implicit Feedback for
Recommendation", WSDM 2021.)
"""

__version__ = "0.1.0"

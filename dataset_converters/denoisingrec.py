"""placeholder"""
from .base import Options
NAME = "denoisingrec"
HELP = "todo"
OPTIONS = Options
def add_arguments(parser): pass
def convert(*a): raise NotImplementedError

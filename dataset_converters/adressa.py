"""placeholder"""
from .base import Options
NAME = "adressa"
HELP = "todo"
OPTIONS = Options
def add_arguments(parser): pass
def convert(*a): raise NotImplementedError

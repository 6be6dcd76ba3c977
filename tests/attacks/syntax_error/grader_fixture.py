"""Attack: A module that does not parse."""
import torch

def scaled_softmax(x, temperature)
    return x

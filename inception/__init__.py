"""Inception-v3, Inception-v4 and Inception-ResNet networks, training and evaluation in JAX."""

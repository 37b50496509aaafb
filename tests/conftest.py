"""Test session set-up: eight emulated CPU devices, so sharding code runs in every test."""

import os

# Must be set before JAX initialises its backend; sharded code paths then run as
# they would on an 8-GPU host.
os.environ.setdefault('JAX_NUM_CPU_DEVICES', '8')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

"""GRANDPA-style finality gated by useful work (see voter.py), behind ports (ports.py)."""

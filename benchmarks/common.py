"""What every benchmark reports beside its numbers: the machine they were measured on.

Written once in the library (``replearn.compare``, which the comparison and Assignment 7 use);
the benchmarks import it from here.
"""

from replearn.compare import load_average, machine_info

__all__ = ["load_average", "machine_info"]

"""Compare two .npz files of runtime_split_compare.py: per array, identical or not, the largest
difference and the smallest row cosine."""
import sys
import numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
assert sorted(a.files) == sorted(b.files), (a.files, b.files)
for key in sorted(a.files):
    x, y = a[key], b[key]
    print(f"{key:32s} shape {x.shape} identical {np.array_equal(x, y)} max|diff| {np.abs(x - y).max():.3g} min cosine {np.sum(x * y, axis=1).min():.8f}")

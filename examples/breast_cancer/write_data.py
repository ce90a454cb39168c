"""Write scikit-learn's bundled breast cancer Wisconsin (diagnostic) set to data/breast_cancer.csv.

The data ships inside scikit-learn, so nothing is downloaded. From here on the pipeline treats the
CSV like any user's file. Target: 0 = malignant, 1 = benign.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(out: Path) -> None:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    print(f"wrote {len(frame)} rows x {frame.shape[1] - 1} features to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data" / "breast_cancer.csv")

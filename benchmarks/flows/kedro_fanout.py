"""load -> (top, moments) -> combine, run by Kedro's runner (argv[1]: sequential or parallel)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from kedro.io import DataCatalog, MemoryDataset, SharedMemoryDataCatalog  # noqa: E402
from kedro.pipeline import node, pipeline  # noqa: E402
from kedro.runner import ParallelRunner, SequentialRunner  # noqa: E402

if __name__ == "__main__":
    flow = pipeline([
        node(common.load, inputs="params:seed", outputs="values", name="load"),
        node(common.top, inputs="values", outputs="a", name="top"),
        node(common.moments, inputs="values", outputs="b", name="moments"),
        node(common.combine, inputs=["a", "b"], outputs="result", name="combine"),
    ])
    parallel = len(sys.argv) > 1 and sys.argv[1] == "parallel"
    catalog_cls = SharedMemoryDataCatalog if parallel else DataCatalog
    catalog = catalog_cls({"params:seed": MemoryDataset(0)})
    runner = ParallelRunner(max_workers=2) if parallel else SequentialRunner()
    outputs = runner.run(flow, catalog)
    assert "result" in outputs, outputs

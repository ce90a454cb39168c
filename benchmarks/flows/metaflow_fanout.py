"""load -> (top, moments) -> combine, as a Metaflow flow on its local runtime."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from metaflow import FlowSpec, step  # noqa: E402


class FanoutFlow(FlowSpec):
    @step
    def start(self):
        self.values = common.load(0)
        self.next(self.top, self.moments)

    @step
    def top(self):
        self.score = common.top(self.values)
        self.next(self.join)

    @step
    def moments(self):
        self.score = common.moments(self.values)
        self.next(self.join)

    @step
    def join(self, inputs):
        self.result = common.combine(inputs.top.score, inputs.moments.score)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    FanoutFlow()

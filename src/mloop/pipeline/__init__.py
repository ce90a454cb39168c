"""The pipeline engine: DSL, graph, content-addressed cache and store, executors, scheduler."""

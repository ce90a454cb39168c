# Two commands do all set-up on a fresh machine with Python 3.11 and pip: `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXAMPLE := examples/breast_cancer
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1

.PHONY: demo test install bench clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	touch $@

# The demo needs mloop and the reference project's plotting library; the tests need their own tools too.
$(VENV)/.installed-demo: $(VENV)/.created pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[examples]'
	touch $@

$(VENV)/.installed-test: $(VENV)/.created pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

install: $(VENV)/.installed-demo

demo: $(VENV)/.installed-demo
	$(BIN)/python $(EXAMPLE)/write_data.py
	cd $(EXAMPLE) && ../../$(BIN)/mloop run
	cd $(EXAMPLE) && ../../$(BIN)/mloop models
	cd $(EXAMPLE) && ../../$(BIN)/mloop deploy
	cd $(EXAMPLE) && ../../$(BIN)/python query.py
	cd $(EXAMPLE) && ../../$(BIN)/mloop monitor status
	cd $(EXAMPLE) && ../../$(BIN)/mloop deployments
	cd $(EXAMPLE) && ../../$(BIN)/mloop agent trigger --reason "make demo"
	cd $(EXAMPLE) && ../../$(BIN)/mloop agent run --once
	cd $(EXAMPLE) && ../../$(BIN)/mloop agent history
	@echo
	@echo "Next: cd $(EXAMPLE) && ../../$(BIN)/mloop runs               # recent runs"
	@echo "      cd $(EXAMPLE) && ../../$(BIN)/mloop ui                 # the web app on http://127.0.0.1:8501"
	@echo "      cd $(EXAMPLE) && ../../$(BIN)/mloop mlflow-ui          # MLflow UI on http://127.0.0.1:5000"
	@echo "      cd $(EXAMPLE) && ../../$(BIN)/mloop monitor report --since 1h --out drift.html   # served traffic vs training"
	@echo "      cd $(EXAMPLE) && ../../$(BIN)/mloop monitor export --out ops   # Prometheus, Alertmanager, Grafana configs"
	@echo "      cd $(EXAMPLE) && ../../$(BIN)/mloop agent start        # continuous training: retrain on alerts, canary, watch, roll back"
	@echo "      cd $(EXAMPLE) && ../../$(BIN)/mloop undeploy breast_cancer   # stop the model server"

# Two workers, a test file each at a time: most tests wait on servers and subprocesses, so the 2 cores stay busy.
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n 2 --dist loadfile

bench: $(VENV)/.installed-test
	bash benchmarks/run.sh

clean:
	-cd $(EXAMPLE) && ../../$(BIN)/mloop undeploy breast_cancer 2>/dev/null
	rm -rf $(VENV) .venv-bench $(EXAMPLE)/.mloop $(EXAMPLE)/data/*.csv benchmarks/.work

# rl_sever: `make demo` trains PPO on CartPole-v1; `make test` runs the test suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
EXTRAS ?= dev,box2d,mujoco,atari,video,ray,export,tune,wandb,mlflow
# Test processes (pytest-xdist); whole test files stay in one process, so module fixtures run once.
TEST_WORKERS ?= 2

.PHONY: install demo test test-slow bench bench-sb3 lint clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing rl_sever[$(EXTRAS)] into $(VENV) (log: $(VENV)/install.log) ..."
	@{ $(BIN)/python -m pip install --upgrade pip && \
	   $(BIN)/python -m pip install -e ".[$(EXTRAS)]"; } > $(VENV)/install.log 2>&1 \
	   || { tail -n 30 $(VENV)/install.log; echo "install failed: see $(VENV)/install.log"; exit 1; }
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/rl-sever train ppo CartPole-v1 --seed 0 --logdir runs

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python bench/run.py --out bench/results.json

# Side-by-side with Stable-Baselines3 (installs the optional `bench` extra: torch + SB3).
bench-sb3: $(STAMP)
	$(BIN)/python -m pip install --quiet "torch==2.13.0" -e ".[$(EXTRAS),bench]"
	$(BIN)/python bench/run.py --out bench/results.json --sb3

lint: $(STAMP)
	$(BIN)/ruff check rl_sever agents envs tests bench

clean:
	rm -rf $(VENV) build *.egg-info

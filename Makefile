# Two commands on a fresh machine: `make demo` and `make test`. Every set-up step is here.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.convlab-installed
FASHION_MNIST_SYSTEM := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: demo test lint data install clean bench experiments

$(PY):
	$(PYTHON) -m venv $(VENV)

# Re-install when the project's dependencies change. torch/torchvision resolve to the
# releases pip's local constraints allow on this machine (2.14.1 / 0.29.1).
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(STAMP)

# Fashion-MNIST from Debian's package where apt is available (root, offline-safe);
# otherwise convlab downloads it itself on first use.
data:
	@if [ -f $(FASHION_MNIST_SYSTEM) ]; then \
		echo "Fashion-MNIST: found in /usr/share/datasets/fashion-mnist"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
		 (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1)) \
		 && echo "Fashion-MNIST: installed Debian's dataset-fashion-mnist" \
		 || echo "Fashion-MNIST: apt could not install it; convlab will download it"; \
	else \
		echo "Fashion-MNIST: no apt here; convlab will download it"; \
	fi

# The main job: what LeNet-5 is, layer by layer, then its training on Fashion-MNIST.
demo: $(STAMP) data
	$(VENV)/bin/convlab summary lenet5 --option activation=relu --option pool=max
# LeNet-5 with ReLU and max pooling, momentum SGD with a one-cycle lr: >= 89% Fashion-MNIST test top-1
# (90.06% on the AMX Xeon with 2 threads, 90.15% on the AMD EPYC; 58 s on 2 idle cores); 28x28 images are
# resized to LeNet's 32x32.
	$(VENV)/bin/convlab train --model lenet5 --data fashion-mnist --activation relu --option pool=max \
		--epochs 8 --batch-size 128 --optimizer momentum --lr 0.05 --schedule onecycle

# convlab against the PyTorch-tutorial way on this machine (about 45 minutes; `$(PY) benchmarks/run.py
# --quick` takes about 6): the table goes to benchmarks/results/latest.json and docs/performance.md.
bench: $(STAMP) data
	$(PY) benchmarks/run.py

# The lectures' claims as experiments (docs/experiments.md): each one command, each within 15 minutes on
# two CPU cores. Results go to runs/experiments/ (rewritten on each run); the docs quote them.
EXPERIMENTS := runs/experiments
CONVLAB := $(VENV)/bin/convlab
experiments: $(STAMP) data
	rm -rf $(EXPERIMENTS)
	$(CONVLAB) sweep --out $(EXPERIMENTS)/optimizers --model lenet5 --data fashion-mnist --epochs 5 \
		--vary optimizer=sgd,momentum,nesterov,adagrad,adadelta,rmsprop,adam
	$(CONVLAB) sweep --out $(EXPERIMENTS)/activations --model mlp --option "hidden=[100,100,100,100,100,100,100,100,100]" \
		--data fashion-mnist --epochs 3 --log-gradients 100 --vary activation=sigmoid,tanh,relu
	for run in $(EXPERIMENTS)/activations/0*; do $(CONVLAB) plot $$run --what gradients; done
	$(CONVLAB) sweep --out $(EXPERIMENTS)/clipping --model lenet5 --option activation=relu --data fashion-mnist \
		--optimizer sgd --lr 2.0 --epochs 3 --vary clip_value=null,0.01 --vary clip_norm=null,1.0
	$(CONVLAB) sweep --out $(EXPERIMENTS)/batch-norm --model vgg_mini --data fashion-mnist --optimizer sgd \
		--epochs 3 --vary batch_norm=true,false --vary lr=0.05,0.5
	$(CONVLAB) sweep --out $(EXPERIMENTS)/degradation --data fashion-mnist --limit 10000 --epochs 5 \
		--warmup-epochs 1 --amp bf16 --channels-last --vary model=plain20,plain56,resnet20,resnet56
	$(CONVLAB) sweep --out $(EXPERIMENTS)/receptive-field --data fashion-mnist --limit 20000 --epochs 3 \
		--vary model=examples/receptive_field.py:one_7x7,examples/receptive_field.py:three_3x3
	$(CONVLAB) lr-find --out $(EXPERIMENTS)/lr-find --model lenet5 --data fashion-mnist --optimizer momentum
	$(CONVLAB) sweep --out $(EXPERIMENTS)/learning-rates --model lenet5 --data fashion-mnist --optimizer momentum \
		--epochs 3 --vary lr=auto,0.001,0.01,0.1,1.0

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

# The web-page test drives Debian's chromium; .ci/browser-deps.sh installs it where apt is available.
test: $(STAMP) data lint
	@bash .ci/browser-deps.sh
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache

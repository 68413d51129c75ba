# The two commands a newcomer needs:  `make demo`  and  `make test`.
PYTHON ?= python3

.PHONY: install demo test bench clean

install:            ## install genmix (CPU torch if none is present) and build its extension
	PYTHON=$(PYTHON) scripts/install.sh

demo: install       ## the main job on phantom data within 15 min on 2 cores: diffusion generator, synthesis, the generative strategies beside the oversample control, report with a verdict
	$(PYTHON) -m genmix info
	$(PYTHON) -m genmix demo --out runs/demo --preset cpu

test:               ## install with test tools, run C++ tests and the pytest suite
	PYTHON=$(PYTHON) scripts/test.sh

bench: install      ## kernel benchmarks against the PyTorch reference
	$(PYTHON) -m pip install -q pytest-benchmark
	$(PYTHON) -m pytest benchmarks --benchmark-only

clean:
	rm -rf build dist *.egg-info genmix/_C*.so

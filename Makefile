# The test command is `make test`: dependencies, linters, then the test suite.

VENV := .venv
PYTHON := $(VENV)/bin/python

.PHONY: test lint deps demo clean dist rpm deb wheel

deps:
	bash scripts/install-deps.sh

lint: deps
	@status=0; \
	$(VENV)/bin/ruff check . || status=1; \
	$(VENV)/bin/mypy || status=1; \
	exit $$status

# Linters first, but the tests run even if they fail; either failing fails the target.
test: deps
	@lint=0; \
	$(VENV)/bin/ruff check . || lint=1; \
	$(VENV)/bin/mypy || lint=1; \
	$(PYTHON) -m pytest -q -ra; tests=$$?; \
	if [ $$lint -ne 0 ]; then echo "make test: linters failed" >&2; fi; \
	[ $$lint -eq 0 ] && [ $$tests -eq 0 ]

demo: deps
	$(PYTHON) scripts/demo.py

# dist/sandbox-service-VERSION.tar.gz from the files git knows (tracked, and new ones not ignored).
dist:
	bash scripts/make-dist.sh dist

# The RPMs in dist/, built from that tarball in a throwaway rpmbuild tree (packaging/build-rpm.sh:
# rpmbuild --nodeps, because the spec's BuildRequires are Fedora names Debian's rpm database lacks).
rpm:
	bash packaging/build-rpm.sh dist

# The Debian packages in dist/ (sandbox-service, dh-sandbox-service), built from that tarball with
# packaging/debian/ as its debian/ (packaging/build-deb.sh: dpkg-buildpackage, then lintian).
deb:
	bash packaging/build-deb.sh dist

# A wheel and a source distribution in dist/, as pip and PyPI take them.
wheel:
	$(PYTHON) -m build --no-isolation --outdir dist .

# Build and tool caches; the virtualenv stays.
clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

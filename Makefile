# shimless: every target runs with the project's own toolchain (tools/env.sh).
SHELL := /bin/bash
STACK ?= lab
ENV := source tools/env.sh &&

.PHONY: setup unit e2e test demo lab-up lab-down preview up destroy refresh check-config shellcheck bench

setup:
	bash tools/setup.sh

unit: setup
	$(ENV) python -m pytest -q tests -m "not e2e"

shellcheck:
	shellcheck -x components/scripts/*.sh lab/*.sh tools/*.sh

e2e: setup lab-up
	$(ENV) python -m pytest -q tests -m e2e

test: setup shellcheck
	$(MAKE) lab-up
	$(ENV) python -m pytest tests -rs

lab-up:
	bash lab/lab-up.sh

lab-down:
	bash lab/lab-down.sh

check-config: setup
	$(ENV) python -m components.cli check-config --stack $(STACK)

preview: setup
	$(ENV) pulumi preview --stack $(STACK) --diff

up: setup
	$(ENV) pulumi up --stack $(STACK)

destroy: setup
	$(ENV) pulumi destroy --stack $(STACK)

refresh: setup
	$(ENV) pulumi refresh --stack $(STACK)

demo: setup
	bash tools/demo.sh

# shimless: every target runs with the project's own toolchain (tools/env.sh):
# nothing needs exporting by hand.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
STACK ?= lab
ENV := source tools/env.sh &&
# Debian packages the tests and the program need where Pulumi runs.
HOST_PACKAGES := shellcheck containerd openssh-client

.PHONY: setup host-deps unit test e2e demo lab-up lab-down lab-reset preview up report destroy refresh \
	check-config drift shellcheck bench

setup: host-deps
	bash tools/setup.sh

host-deps:
	@missing=""; for pkg in $(HOST_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

shellcheck: host-deps
	shellcheck -x $$(find components/scripts lab tools bench tests -name '*.sh' -not -path 'lab/state/*') \
	  $$(find lab -maxdepth 1 -type f -executable ! -name '*.*')

# Fast: pure modules, the resource graph under mocks, the CLI. No lab, no engine.
unit: setup
	$(ENV) python -m pytest -m "not e2e"

# Everything: shellcheck, unit tests, then the lab and the real engine end to end.
# The lab is always torn down afterwards, pass or fail.
test: setup shellcheck
	bash lab/lab-up.sh
	rc=0; $(ENV) python -m pytest -rs || rc=$$?; bash lab/lab-down.sh; exit $$rc

e2e: setup
	bash lab/lab-up.sh
	$(ENV) python -m pytest -rs -m e2e

# The lab with its control plane and real kubelets, a workload, preview, up, a closing table and
# the report. tools/demo.sh runs setup itself, so that it can say first what will be built.
demo: host-deps
	bash tools/demo.sh

lab-up:
	bash lab/lab-up.sh

lab-down:
	bash lab/lab-down.sh

lab-reset:
	bash lab/lab-reset.sh

# Each stack target: no lab passphrase for another stack (tools/env.sh, shimless_require_secrets).
check-config: setup
	export SHIMLESS_STACK=$(STACK) && $(ENV) python -m components.cli check-config --stack $(STACK)

drift: setup
	export SHIMLESS_STACK=$(STACK) && $(ENV) shimless_require_secrets $(STACK) && \
	  python -m components.cli drift --stack $(STACK)

preview: setup
	export SHIMLESS_STACK=$(STACK) && $(ENV) shimless_require_secrets $(STACK) && \
	  pulumi stack select --create $(STACK) >/dev/null && pulumi preview --stack $(STACK) --diff

# Each update logs Pulumi's engine events to .state/events/<stack>-<UTC time>.jsonl (--event-log:
# a flag the CLI offers only with PULUMI_DEBUG_COMMANDS=true); the report is written from it after,
# pass or fail.
up: setup
	export SHIMLESS_STACK=$(STACK) && $(ENV) shimless_require_secrets $(STACK) && \
	  pulumi stack select --create $(STACK) >/dev/null && \
	  events=$$(python -m components.report --stack $(STACK) --new-event-log) && \
	  { PULUMI_DEBUG_COMMANDS=true pulumi up --stack $(STACK) --event-log "$$events" && rc=0 || rc=$$?; } && \
	  { python -m components.report --stack $(STACK) --events "$$events" || true; } && exit $$rc

# .state/<stack>-report.html from the newest event log (or EVENTS=path) and the stack's outputs.
report: setup
	export SHIMLESS_STACK=$(STACK) && $(ENV) shimless_require_secrets $(STACK) && \
	  python -m components.report --stack $(STACK) $(if $(EVENTS),--events $(EVENTS))

destroy: setup
	export SHIMLESS_STACK=$(STACK) && $(ENV) shimless_require_secrets $(STACK) && pulumi destroy --stack $(STACK)

refresh: setup
	export SHIMLESS_STACK=$(STACK) && $(ENV) shimless_require_secrets $(STACK) && pulumi refresh --stack $(STACK)

bench: setup
	$(ENV) python bench/preview_scale.py

module shimless.local/command-standin

go 1.25.11

require (
	github.com/pulumi/pulumi/sdk/v3 v3.259.0
	golang.org/x/crypto v0.55.0
)

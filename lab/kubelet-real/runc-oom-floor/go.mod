module shimless.lab/runc-oom-floor

go 1.22

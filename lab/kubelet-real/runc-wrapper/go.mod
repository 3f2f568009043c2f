module shimless.lab/runc-wrapper

go 1.22

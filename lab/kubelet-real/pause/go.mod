module shimless.lab/pause

go 1.22

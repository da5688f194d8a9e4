module benchupstream

go 1.24

module benchloadgen

go 1.24

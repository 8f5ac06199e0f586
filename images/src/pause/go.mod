module svcconform.local/pause

go 1.24.0

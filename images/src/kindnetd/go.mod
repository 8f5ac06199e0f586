module svcconform.local/kindnetd

go 1.24.0

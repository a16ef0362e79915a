module github.com/example/sidecar

go 1.26.1

require github.com/go-sql-driver/mysql v1.10.1

require (
	filippo.io/edwards25519 v1.2.0 // indirect
	github.com/magefile/mage v1.17.2 // indirect
)

tool github.com/magefile/mage

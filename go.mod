module github.com/methanemap/methanemap

go 1.26.8

require (
	github.com/airbusgeo/godal v0.0.18 // indirect
	github.com/paulmach/orb v0.14.0 // indirect
	go.mongodb.org/mongo-driver/v2 v2.5.0 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)

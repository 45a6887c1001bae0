module github.com/crispy-enigma/crispy/examples/go

go 1.26.0

require (
	github.com/crispy-enigma/crispy/openapi/clients/go v0.0.0-00010101000000-000000000000
	github.com/google/uuid v1.6.0
	github.com/openai/openai-go/v3 v3.98.0
)

require (
	github.com/apapsch/go-jsonmerge/v2 v2.0.0 // indirect
	github.com/coder/websocket v1.8.15 // indirect
	github.com/oapi-codegen/runtime v1.2.0 // indirect
	github.com/tidwall/gjson v1.20.0 // indirect
	github.com/tidwall/match v1.1.1 // indirect
	github.com/tidwall/pretty v1.2.1 // indirect
	github.com/tidwall/sjson v1.2.5 // indirect
)

replace github.com/crispy-enigma/crispy/openapi/clients/go => ../../openapi/clients/go

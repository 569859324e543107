// Package configs holds the on-disk configuration schemas of the gatehouse
// daemons (Registrar, MASA), the strict YAML loader, and the commented example
// files that `gatehouse config example` prints.
//
// Rules (STYLE.md §3.7): YAML with camelCase keys decoded with
// KnownFields(true), so a misspelt key is an error; durations are strings
// ("90s"); secrets are referenced by file path, never inline; every field is
// optional and safe at its zero value; WithDefaults fills defaults and
// Validate is pure (no disk or network access) and reports every problem at
// once with errors.Join.
package configs

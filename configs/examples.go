package configs

import (
	"embed"
	"fmt"
	"sort"
	"strings"
)

//go:embed examples/*.yaml
var examples embed.FS

// Example returns the commented example config for a component
// ("registrar" or "masa"). It loads as is through the real loader.
func Example(name string) ([]byte, error) {
	b, err := examples.ReadFile("examples/" + name + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("no example config %q (have %s)", name, strings.Join(ExampleNames(), ", "))
	}
	return b, nil
}

// ExampleNames lists the components with an example config.
func ExampleNames() []string {
	ents, _ := examples.ReadDir("examples")
	var names []string
	for _, e := range ents {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(names)
	return names
}

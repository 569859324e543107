package configs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.yaml.in/yaml/v3"
)

// MaxConfigBytes caps a configuration file.
const MaxConfigBytes = 1 << 20

// Duration is a time.Duration written in YAML as a Go duration string
// ("90s", "24h").
type Duration time.Duration

// UnmarshalYAML decodes a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: duration must be a string such as \"90s\": %w", n.Line, err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML encodes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// decodeStrict decodes exactly one YAML document into v, refusing unknown
// keys and trailing documents.
func decodeStrict(r io.Reader, v any) error {
	b, err := io.ReadAll(io.LimitReader(r, MaxConfigBytes+1))
	if err != nil {
		return err
	}
	if len(b) > MaxConfigBytes {
		return fmt.Errorf("config is larger than %d bytes", MaxConfigBytes)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("config is empty")
		}
		return err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("config holds more than one YAML document")
	}
	return nil
}

// LoadRegistrar reads, defaults and validates a registrar config file.
func LoadRegistrar(path string) (*Registrar, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open registrar config: %w", err)
	}
	defer f.Close()
	return ParseRegistrar(f)
}

// ParseRegistrar decodes, defaults and validates a registrar config.
func ParseRegistrar(r io.Reader) (*Registrar, error) {
	var c Registrar
	if err := decodeStrict(r, &c); err != nil {
		return nil, fmt.Errorf("decode registrar config: %w", err)
	}
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("invalid registrar config: %w", err)
	}
	return &c, nil
}

// LoadMASA reads, defaults and validates a MASA config file.
func LoadMASA(path string) (*MASA, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open masa config: %w", err)
	}
	defer f.Close()
	return ParseMASA(f)
}

// ParseMASA decodes, defaults and validates a MASA config.
func ParseMASA(r io.Reader) (*MASA, error) {
	var c MASA
	if err := decodeStrict(r, &c); err != nil {
		return nil, fmt.Errorf("decode masa config: %w", err)
	}
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("invalid masa config: %w", err)
	}
	return &c, nil
}

package main

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/gatehouse-pki/gatehouse/configs"
)

func (a *app) configCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Configuration helpers",
	}
	cmd.AddCommand(&cobra.Command{
		Use:       "example " + strings.Join(configs.ExampleNames(), "|"),
		Short:     "Print a commented example config that loads as is",
		Args:      exactArgs(1),
		ValidArgs: configs.ExampleNames(),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := configs.Example(args[0])
			if err != nil {
				return usageError{err}
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	})
	return cmd
}

package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/internal/app"
	"github.com/portcullis/portcullis/internal/cli"
)

// newPolicy is "portcullis policy", whose one subcommand is test.
func newPolicy() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Work with the configured policies",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newPolicyTest())
	return cmd
}

func newPolicyTest() *cobra.Command {
	var (
		path string
		o    cli.PolicyTestOptions
	)
	cmd := &cobra.Command{
		Use:   "test --config FILE [-o text|json] IMAGE...",
		Short: "Decide for images as serve would, and explain why",
		Long: `Resolves each IMAGE ("<upstream>/<repo>[:tag|@digest]", as clients of the proxy name
it; tag latest by default) through the configured upstreams and decides with the same code as
serve, without the decision cache: which policy matched, each authority's and attestation
requirement's result, every signature and attestation examined and why it counted or not.
Nothing is stored and the content store is not opened.

Exit status: 0 every image admitted, 1 an image denied, 2 an image could not be decided (or
bad arguments). -o json prints a JSON array of {image, outcome, error, explanation} (see
README, "portcullis policy test").`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, images []string) error {
			code := policyTest(cmd, path, o, images)
			if code != cli.PolicyTestAdmitted {
				os.Exit(code)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "configuration file (YAML), as for serve")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "text", "output format: text or json")
	return cmd
}

// policyTest builds the configuration's decision code as serve does, with an in-memory
// content store (nothing is served or stored), and runs cli.PolicyTest.
func policyTest(cmd *cobra.Command, path string, o cli.PolicyTestOptions, images []string) int {
	stderr := cmd.ErrOrStderr()
	cfg, err := config.Load(path, os.Environ())
	if err != nil {
		cmd.PrintErrln("portcullis policy test:", err)
		return cli.PolicyTestError
	}
	cfg.Storage = config.Storage{Driver: "inmemory"}
	level := new(slog.LevelVar)
	log := newLogger(stderr, cfg.Log, level)
	ctx := cmd.Context()
	a, err := app.New(ctx, cfg, app.Options{Logger: log, LookupEnv: os.LookupEnv})
	if err != nil {
		cmd.PrintErrln("portcullis policy test:", err)
		return cli.PolicyTestError
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = a.Close(cctx)
	}()
	return cli.PolicyTest(ctx, env(cmd), o, a, images)
}

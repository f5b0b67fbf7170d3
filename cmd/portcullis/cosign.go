package main

import "github.com/spf13/cobra"

// addCosignCommands adds the cosign-compatible signing workflow: generate-key-pair, sign,
// verify, generate, attach, triangulate, clean.
func addCosignCommands(root *cobra.Command) {}

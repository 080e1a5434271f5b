package daemon

import (
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/fogdb/fog/internal/guard"
)

// newGuardCommand is the process an agent starts to fence its primaries if the agent dies
// (package guard); it is not meant to be run by hand.
func (d *daemon) guardCommand() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use: "guard", Short: "Fence this machine's primaries when their agent stops renewing its lease (started by the agent)",
		Args: cobra.NoArgs, Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewTextHandler(d.io.Err, nil)).With("component", "guard")
			return guard.Run(cmd.Context(), file, log)
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "the guard file the agent writes")
	_ = cmd.MarkFlagRequired("file")
	return cmd
}

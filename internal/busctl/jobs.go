package busctl

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/plugbus/plugbus/schemas"
)

func (a *app) jobCommand() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:     "job",
		Aliases: []string{"jobs"},
		Short:   "Deploy, delete and list jobs",
	})
	cmd.AddCommand(a.jobDeployCommand(), a.jobDeleteCommand(), a.jobListCommand(), a.jobGetCommand())
	return cmd
}

func (a *app) jobDeployCommand() *cobra.Command {
	var (
		version, image string
		env, labels    []string
	)
	cmd := &cobra.Command{
		Use:   "deploy NAME --version V --image IMG [--env K=V]... [--label K=V]...",
		Short: "Deploy a job (runs the job.* deploy hook chains, publishes job.v1.deployed)",
		Long: `Deploy a job. The broker runs the deploy hook chains first (job.pre_deploy,
job.runtime_env, job.dockerfile_injection, job.bootstrap_injection), then stores
the job and publishes io.plugbus.job.v1.deployed.

Prints the job as stored (with the env and injections the hooks added), the id
of the event, and one line per hook step: hook point, plugin, outcome, duration
and what it added or why it failed. A hook that refuses the deploy makes busctl
exit 1 with the plugin and its reason on stderr. With -o json the whole reply,
chains included, is printed.`,
		Args: exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			envMap, err := parsePairs("env", env)
			if err != nil {
				return err
			}
			labelMap, err := parsePairs("label", labels)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			res, err := c.DeployJob(cmd.Context(), schemas.JobDeployRequest{
				Name: args[0], Version: version, Image: image, Env: envMap, Labels: labelMap,
			})
			if err != nil {
				return err
			}
			return a.printJobResponse(res)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&version, "version", "", "job version (required)")
	f.StringVar(&image, "image", "", "container image (required)")
	f.StringArrayVar(&env, "env", nil, "environment variable KEY=VALUE (repeatable)")
	f.StringArrayVar(&labels, "label", nil, "label KEY=VALUE (repeatable)")
	_ = cmd.MarkFlagRequired("version")
	_ = cmd.MarkFlagRequired("image")
	return cmd
}

func (a *app) jobDeleteCommand() *cobra.Command {
	var version string
	cmd := &cobra.Command{
		Use:   "delete NAME --version V",
		Short: "Delete a job version (runs the job.pre_delete hook, publishes job.v1.deleted)",
		Args:  exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			res, err := c.DeleteJob(cmd.Context(), args[0], version)
			if err != nil {
				return err
			}
			return a.printJobResponse(res)
		}),
	}
	cmd.Flags().StringVar(&version, "version", "", "job version (required)")
	_ = cmd.MarkFlagRequired("version")
	return cmd
}

func (a *app) jobListCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List jobs",
		Args:    exactArgs(),
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			jobs, err := c.ListJobs(cmd.Context())
			if err != nil {
				return err
			}
			if jobs == nil {
				jobs = []schemas.Job{}
			}
			if a.structured() {
				return a.printValue(schemas.JobListResponse{Jobs: jobs})
			}
			w := newTable(a.stdout)
			row(w, "NAME", "VERSION", "IMAGE", "STATUS", "DEPLOYED", "DELETED")
			for _, j := range jobs {
				deleted := ""
				if j.DeletedAt != nil {
					deleted = fmtTime(*j.DeletedAt)
				}
				row(w, j.Name, j.Version, j.Image, j.Status, fmtTime(j.DeployedAt), deleted)
			}
			return w.Flush()
		}),
	}
}

func (a *app) jobGetCommand() *cobra.Command {
	var version string
	cmd := &cobra.Command{
		Use:   "get NAME --version V",
		Short: "Show one job version with its env and labels",
		Args:  exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			j, err := c.GetJob(cmd.Context(), args[0], version)
			if err != nil {
				return err
			}
			if a.structured() {
				return a.printValue(j)
			}
			return a.printJob(j, "")
		}),
	}
	cmd.Flags().StringVar(&version, "version", "", "job version (required)")
	_ = cmd.MarkFlagRequired("version")
	return cmd
}

func (a *app) printJobResponse(res *schemas.JobResponse) error {
	if a.structured() {
		return a.printValue(res)
	}
	if err := a.printJob(&res.Job, res.EventID); err != nil {
		return err
	}
	return printChainLines(a.stdout, res.Chains, true)
}

// printJob shows one job as "KEY: value" lines, with the event id when
// the job comes from deploy or delete.
func (a *app) printJob(j *schemas.Job, eventID string) error {
	w := newTable(a.stdout)
	kv := func(k, v string) {
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(w, "%s:\t%s\n", k, v)
	}
	kv("NAME", j.Name)
	kv("VERSION", j.Version)
	kv("IMAGE", j.Image)
	kv("STATUS", j.Status)
	kv("DEPLOYED", fmtTime(j.DeployedAt))
	if j.DeletedAt != nil {
		kv("DELETED", fmtTime(*j.DeletedAt))
	}
	kv("ENV", fmtStringMap(j.Env))
	kv("LABELS", fmtStringMap(j.Labels))
	if eventID != "" {
		kv("EVENT", eventID)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	// The injections are multi-line text: shown as indented blocks.
	for _, inj := range []struct{ title, text string }{
		{"DOCKERFILE INJECTION", j.DockerfileInjection},
		{"BOOTSTRAP INJECTION", j.BootstrapInjection},
	} {
		if strings.TrimSpace(inj.text) == "" {
			continue
		}
		fmt.Fprintf(a.stdout, "\n%s:\n", inj.title)
		for _, line := range strings.Split(strings.TrimRight(inj.text, "\n"), "\n") {
			fmt.Fprintf(a.stdout, "  %s\n", line)
		}
	}
	return nil
}

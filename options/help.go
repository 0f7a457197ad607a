package options

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Metavar returns the placeholder help shows for the option's value: the values
// themselves for a short enum ("full|lora"), else a type word (N, FLOAT, TEXT, …).
func (o Option) Metavar() string {
	switch o.Type {
	case Int:
		return "N"
	case Float:
		return "FLOAT"
	case Bool:
		return "BOOL"
	case Enum:
		if len(o.Values) > 0 && len(o.Values) <= 4 {
			return strings.Join(o.Values, "|")
		}
		return "VALUE"
	case Path:
		return "PATH"
	case JSON:
		return "JSON|PATH"
	case List:
		return "LIST"
	}
	return "TEXT"
}

// WriteHelp writes the training options of `simpletuner train --help` (the command prints
// its usage line and own flags above): every option, grouped by category, with its value
// form, help, default, allowed values or range, aliases and restrictions.
func (r *Registry) WriteHelp(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, "Training options. Each is also accepted without the leading \"--\". Values given")
	fmt.Fprintln(bw, "here override the environment's config.json, which overrides the defaults below.")
	for cat := Category(0); cat < numCategories; cat++ {
		var opts []*Option
		for _, o := range r.opts {
			if o.Category == cat {
				opts = append(opts, o)
			}
		}
		if len(opts) == 0 {
			continue
		}
		fmt.Fprintf(bw, "\n%s:\n", cat)
		for _, o := range opts {
			writeOptionHelp(bw, o)
		}
	}
	return bw.Flush()
}

func writeOptionHelp(w io.Writer, o *Option) {
	fmt.Fprintf(w, "  %s=%s\n", o.Name, o.clone().Metavar())
	var notes []string
	if o.Required {
		notes = append(notes, "Required.")
	}
	if o.Default != nil {
		d := FormatValue(o.Default)
		if d == "" {
			d = `""`
		}
		notes = append(notes, "Default: "+d+".")
	}
	if (o.Type == Enum || o.Type == List) && len(o.Values) > 4 {
		notes = append(notes, "One of: "+strings.Join(o.Values, ", ")+".")
	}
	if !o.Range.empty() {
		notes = append(notes, "Range: "+o.Range.String()+".")
	}
	if len(o.Aliases) > 0 {
		notes = append(notes, "Also: "+strings.Join(o.Aliases, ", ")+".")
	}
	if len(o.Families) > 0 {
		notes = append(notes, "Families: "+strings.Join(o.Families, ", ")+".")
	}
	if len(o.ModelTypes) > 0 {
		notes = append(notes, "Model type: "+strings.Join(o.ModelTypes, ", ")+".")
	}
	if o.Permission != "" {
		notes = append(notes, "Needs permission "+o.Permission+".")
	}
	if o.ServerOnly {
		notes = append(notes, "Used by the server, not passed to the trainer.")
	}
	text := o.Help
	if len(notes) > 0 {
		text += " " + strings.Join(notes, " ")
	}
	for _, line := range wrap(text, 80) {
		fmt.Fprintf(w, "      %s\n", line)
	}
}

// wrap breaks text into lines of at most width bytes, at spaces.
func wrap(text string, width int) []string {
	var lines []string
	var cur strings.Builder
	for _, word := range strings.Fields(text) {
		if cur.Len() > 0 && cur.Len()+1+len(word) > width {
			lines = append(lines, cur.String())
			cur.Reset()
		}
		if cur.Len() > 0 {
			cur.WriteByte(' ')
		}
		cur.WriteString(word)
	}
	if cur.Len() > 0 {
		lines = append(lines, cur.String())
	}
	return lines
}

//go:build cuda

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"

	"simpletuner/plugins"
)

// writeDataset writes n red squares captioned "red" and n blue circles captioned "blue" on a
// grey background (the runner's learning-test data set) into dir.
func writeDataset(dir string, n, res int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := range n {
		for _, class := range []string{"red", "blue"} {
			img := image.NewRGBA(image.Rect(0, 0, res, res))
			cx, cy, r := res/2+(i%3)-1, res/2+(i/3%3)-1, res/4+i%2
			for y := range res {
				for x := range res {
					c := color.RGBA{128, 128, 128, 255}
					dx, dy := x-cx, y-cy
					if class == "red" && abs(dx) <= r && abs(dy) <= r {
						c = color.RGBA{230, 20, 20, 255}
					}
					if class == "blue" && dx*dx+dy*dy <= r*r {
						c = color.RGBA{20, 20, 230, 255}
					}
					img.Set(x, y, c)
				}
			}
			name := filepath.Join(dir, fmt.Sprintf("%s_%c", class, 'a'+i))
			var buf bytes.Buffer
			if err := png.Encode(&buf, img); err != nil {
				return err
			}
			if err := os.WriteFile(name+".png", buf.Bytes(), 0o644); err != nil {
				return err
			}
			if err := os.WriteFile(name+".txt", []byte(class), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// trainConfig is the learning test's configuration: the tiny model on the two classes.
func trainConfig(dataDir, out string, steps int, prec string) map[string]any {
	dl, _ := json.Marshal([]map[string]any{
		{"id": "shapes", "type": "local", "dataset_type": "image", "instance_data_dir": dataDir, "caption_strategy": "textfile",
			"resolution": 16, "resolution_type": "pixel", "crop": false},
		{"id": "text", "type": "memory", "dataset_type": "text_embeds", "default": true},
	})
	return map[string]any{
		"--model_family": "dit", "--model_flavour": "tiny", "--model_type": "full", "--output_dir": out,
		"--data_backend_config": string(dl), "--train_batch_size": 4, "--max_train_steps": steps,
		"--learning_rate": 2e-3, "--optimizer": "adamw", "--lr_scheduler": "constant_with_warmup", "--lr_warmup_steps": 20,
		"--seed": 7, "--checkpoint_step_interval": 100000, "--mixed_precision": prec,
	}
}

// runLearn trains through the real trainer binary (standalone mode) and checks, as the
// runner's TestLearnsTwoCaptionedClasses does, that the mean loss of the last 20 steps is
// below half that of the first 20.
func runLearn(args []string) error {
	fs := flag.NewFlagSet("learn", flag.ContinueOnError)
	trainer := fs.String("trainer", "simpletuner-trainer-cuda", "trainer binary")
	steps := fs.Int("steps", 300, "optimizer steps")
	prec := fs.String("precision", "bf16", "--mixed_precision")
	work := fs.String("work", os.TempDir(), "scratch directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dataDir := filepath.Join(*work, "learn-data")
	if err := writeDataset(dataDir, 8, 16); err != nil {
		return err
	}
	cfgPath := filepath.Join(*work, "learn-config.json")
	raw, _ := json.Marshal(trainConfig(dataDir, filepath.Join(*work, "learn-out"), *steps, *prec))
	if err := os.WriteFile(cfgPath, raw, 0o644); err != nil {
		return err
	}
	jobDir := filepath.Join(*work, "learn-job")
	_ = os.RemoveAll(jobDir)
	cmd := exec.Command(*trainer, "run", "--config", cfgPath, "--job-dir", jobDir)
	cmd.Stderr = os.Stderr
	out, runErr := cmd.Output()
	var losses []float64
	backend := ""
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev struct {
			Type string         `json:"type"`
			Data map[string]any `json:"data"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
		}
		if l, ok := ev.Data["loss"].(float64); ok && ev.Type == plugins.EventTrainingProgress {
			losses = append(losses, l)
		}
		if b, ok := ev.Data["backend"].(string); ok {
			backend = b
		}
	}
	if runErr != nil {
		return fmt.Errorf("trainer: %w (%d steps reported)", runErr, len(losses))
	}
	if len(losses) < 40 {
		return fmt.Errorf("only %d step losses reported", len(losses))
	}
	first, last := mean(losses[:20]), mean(losses[len(losses)-20:])
	status := "PASS"
	if !(last < first/2) {
		status = "FAIL"
	}
	fmt.Printf("LEARN\t%s\t%d steps\t%.4f\t%.4f\t%s\t%s\n", *prec, len(losses), first, last, status, backend)
	if status == "FAIL" {
		return fmt.Errorf("loss did not fall by half: %.4f → %.4f", first, last)
	}
	return nil
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

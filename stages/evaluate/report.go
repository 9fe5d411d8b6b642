package evaluate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// reportFiles is what the report artifact holds.
type reportFiles struct {
	metrics   map[string]float64
	generated []Prediction
	mc        []ChoicePrediction
}

// marshal encodes v as JSON without HTML escaping (chat markup such as
// "<|im_start|>" stays readable).
func marshal(v any, indent bool) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if indent {
		enc.SetIndent("", "  ")
	}
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeJSONL[T any](path string, rows []T) error {
	var buf bytes.Buffer
	for _, r := range rows {
		b, err := marshal(r, false)
		if err != nil {
			return err
		}
		buf.Write(b)
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// writeReport writes the report directory: metrics.json (keys sorted),
// metrics.png, and the prediction files of the metrics computed.
func writeReport(dir string, f reportFiles) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	b, err := marshal(f.metrics, true)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, MetricsFile), b, 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	img, err := MetricsPNG(f.metrics)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, PlotFile), img, 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if f.generated != nil {
		if err := writeJSONL(filepath.Join(dir, PredictionsFile), f.generated); err != nil {
			return fmt.Errorf("report: %w", err)
		}
	}
	if f.mc != nil {
		if err := writeJSONL(filepath.Join(dir, MCPredictionsFile), f.mc); err != nil {
			return fmt.Errorf("report: %w", err)
		}
	}
	return nil
}

package gpu

import (
	"strings"
	"testing"
)

func TestVisible(t *testing.T) {
	base := discover(&fakeNVML{devices: []rawDevice{
		h200("GPU-aaaa-1111"), h200("GPU-aaaa-2222"), h200("GPU-bbbb-3333"),
		{uuid: "GPU-t4", name: "Tesla T4", ccMajor: 7, ccMinor: 5},
	}})
	tests := []struct {
		value      string
		set        bool
		wantUsable []int
		wantReason string
	}{
		{value: "", set: false, wantUsable: []int{0, 1, 2}},
		{value: "0,2", set: true, wantUsable: []int{0, 2}},
		{value: " 2 , 1 ", set: true, wantUsable: []int{1, 2}},
		{value: "GPU-bbbb", set: true, wantUsable: []int{2}},
		{value: "GPU-aaaa-2222,0", set: true, wantUsable: []int{0, 1}},
		// The list ends at the first entry that names no device.
		{value: "1,7,2", set: true, wantUsable: []int{1}},
		{value: "1,1,2", set: true, wantUsable: []int{1}},
		{value: "0,GPU-aaaa,2", set: true, wantUsable: []int{0}},
		{value: "1,MIG-abc,2", set: true, wantUsable: []int{1}},
		{value: "", set: true, wantReason: `CUDA_VISIBLE_DEVICES="" hides all 4 devices`},
		{value: "-1", set: true, wantReason: `CUDA_VISIBLE_DEVICES="-1" hides all 4 devices`},
		{value: "7", set: true, wantReason: `CUDA_VISIBLE_DEVICES="7" names no usable device: no device has index 7`},
		{value: "GPU-aaaa", set: true, wantReason: `"GPU-aaaa" matches more than one device`},
		{value: "GPU-zzz", set: true, wantReason: `no device has UUID "GPU-zzz"`},
		{value: "first", set: true, wantReason: `"first" is neither a device index nor a UUID`},
		{value: "MIG-abc", set: true, wantReason: `lathe does not schedule MIG instances`},
		{value: "3", set: true, wantReason: "no usable device (GPU 0: hidden by CUDA_VISIBLE_DEVICES=\"3\"; GPU 1: hidden"},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			got := base.Visible(tt.value, tt.set)
			var usable []int
			for _, d := range got.Usable() {
				usable = append(usable, d.Index)
			}
			if !equalInts(usable, tt.wantUsable) {
				t.Errorf("usable = %v, want %v", usable, tt.wantUsable)
			}
			if tt.wantReason != "" && !strings.Contains(got.Reason, tt.wantReason) {
				t.Errorf("reason %q, want it to contain %q", got.Reason, tt.wantReason)
			}
			if tt.wantReason == "" && got.Reason != "" {
				t.Errorf("unexpected reason %q", got.Reason)
			}
			if len(got.Devices) != len(base.Devices) {
				t.Errorf("hidden devices dropped: %d of %d", len(got.Devices), len(base.Devices))
			}
		})
	}
	// Visible does not change the Info it was called on.
	if len(base.Usable()) != 3 {
		t.Errorf("base changed: %+v", base.Devices)
	}
}

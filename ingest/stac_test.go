package ingest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	mm "github.com/methanemap/methanemap"
	"github.com/methanemap/methanemap/internal/testenv"
)

// realItem reads a real STAC document of ../shared/realdata/stac.
func realItem(t *testing.T, file string) []byte {
	t.Helper()
	data, err := os.ReadFile(testenv.RealData(t, filepath.Join("stac", file)))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestSTACItemsMapToScenes(t *testing.T) {
	allS2 := []string{"B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B11", "B12", "B8A", "SCL"}
	tests := []struct {
		file   string
		sensor mm.Sensor
		bands  []string // sorted band names
		scheme string   // prefix every href must have
	}{
		{"earthsearch-v0_sentinel-s2-l2a-cogs_S2A_28QCH_20200714_0_L2A.json", mm.Sentinel2, allS2, "https://"},
		{"earthsearch-v0_sentinel-s2-l2a-cogs_S2B_20EPT_20250731_0_L2A.json", mm.Sentinel2, allS2, "https://"},
		{"earthsearch-v1_sentinel-2-l2a_S2A_13TDE_20231008_0_L2A.json", mm.Sentinel2, allS2, "https://"},
		{"earthsearch-v1_sentinel-2-l2a_S2B_24MUV_20250731_0_L2A.json", mm.Sentinel2, allS2, "https://"},
		{"earthsearch-v1_sentinel-2-c1-l2a_S2B_T24MUV_20250731T130245_L2A.json", mm.Sentinel2, allS2, "https://"},
		{"pc_sentinel-2-l2a_S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531.json", mm.Sentinel2, allS2, "https://"},
		{"pc_sentinel-2-l2a_S2B_MSIL2A_20240419T095549_R122_T47XMJ_20240419T122756.json", mm.Sentinel2, allS2, "https://"},
		{"pc_naip_fl_m_2608004_nw_17_060_20191215_20200113.json", mm.NAIP, []string{"red", "green", "blue", "nir"}, "https://"},
		{"pc_naip_id_m_4611606_ne_11_060_20231117_20240103.json", mm.NAIP, []string{"red", "green", "blue", "nir"}, "https://"},
		{"pc_naip_pr_m_1806551_nw_20_030_20221212_20230329.json", mm.NAIP, []string{"red", "green", "blue", "nir"}, "https://"},
		{"pc_sentinel-1-rtc_S1A_IW_GRDH_1SDV_20240419T045839_20240419T045904_053498_067DF2_rtc.json", mm.Sentinel1, []string{"VH", "VV"}, "https://"},
		{"pc_sentinel-1-rtc_S1A_IW_GRDH_1SDV_20240419T045904_20240419T045916_053498_067DF2_rtc.json", mm.Sentinel1, []string{"VH", "VV"}, "https://"},
		{"pc-staging_sentinel-1-grd_S1A_EW_GRDM_1SSH_20220505T235314_20220505T235417_043082_05250D.json", mm.Sentinel1, []string{"HH"}, "https://"},
		{"earthsearch-v1_sentinel-1-grd_S1A_IW_GRDH_1SSH_20250731T135608_20250731T135637_060328_077F7E.json", mm.Sentinel1, []string{"HH"}, "s3://"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data := realItem(t, tt.file)
			scenes, err := ParseMessage(data)
			if err != nil {
				t.Fatal(err)
			}
			if len(scenes) != 1 {
				t.Fatalf("got %d scenes", len(scenes))
			}
			sc := scenes[0]
			if got := sc.Sensors(); len(got) != 1 || got[0] != tt.sensor {
				t.Fatalf("sensors = %v, want [%s]", got, tt.sensor)
			}
			if sc.Acquired.IsZero() {
				t.Error("acquired not read from properties.datetime")
			}
			a := sc.Assets[tt.sensor]
			got := a.BandNames()
			want := slices.Clone(tt.bands)
			if a.Href != "" { // multi-band file: order matters
				if !slices.Equal(got, want) {
					t.Errorf("bands = %v, want %v", got, want)
				}
			} else {
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Errorf("bands = %v, want %v", got, want)
				}
			}
			hrefs := []string{a.Href}
			for _, h := range a.Hrefs {
				hrefs = append(hrefs, h)
			}
			for _, h := range hrefs {
				if h != "" && !strings.HasPrefix(h, tt.scheme) {
					t.Errorf("href %s: want %s…", h, tt.scheme)
				}
				if strings.Contains(h, ".jp2") {
					t.Errorf("href %s: a JP2 twin was chosen over the COG", h)
				}
			}
			if err := sc.Validate(); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestSTACItemRadiometry reads from real Items whether their Sentinel-2
// DNs carry the +1000 of processing baseline 04.00, and the scale of their
// Sentinel-1 values. Each case names what in the Item says so.
func TestSTACItemRadiometry(t *testing.T) {
	tests := []struct {
		file     string
		baseline string
		offset   float64
		units    string
	}{
		// sentinel:product_id S2A_MSIL2A_20200714T115221_N0214_…
		{"earthsearch-v0_sentinel-s2-l2a-cogs_S2A_28QCH_20200714_0_L2A.json", "02.14", 0, ""},
		// sentinel:processing_baseline 05.11, sentinel:boa_offset_applied
		{"earthsearch-v0_sentinel-s2-l2a-cogs_S2B_20EPT_20250731_0_L2A.json", "05.11", 0, ""},
		// s2:processing_baseline 05.09, earthsearch:boa_offset_applied
		{"earthsearch-v1_sentinel-2-l2a_S2A_13TDE_20231008_0_L2A.json", "05.09", 0, ""},
		{"earthsearch-v1_sentinel-2-l2a_S2B_24MUV_20250731_0_L2A.json", "05.11", 0, ""},
		// Collection 1 keeps ESA's DNs: s2:processing_baseline 05.11 alone
		{"earthsearch-v1_sentinel-2-c1-l2a_S2B_T24MUV_20250731T130245_L2A.json", "05.11", -1000, ""},
		{"pc_sentinel-2-l2a_S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531.json", "02.12", 0, ""},
		{"pc_sentinel-2-l2a_S2B_MSIL2A_20240419T095549_R122_T47XMJ_20240419T122756.json", "05.10", -1000, ""},
		{"pc_sentinel-1-rtc_S1A_IW_GRDH_1SDV_20240419T045839_20240419T045904_053498_067DF2_rtc.json", "", 0, mm.S1Power},
		{"earthsearch-v1_sentinel-1-grd_S1A_IW_GRDH_1SSH_20250731T135608_20250731T135637_060328_077F7E.json", "", 0, mm.S1DN},
		{"pc-staging_sentinel-1-grd_S1A_EW_GRDM_1SSH_20220505T235314_20220505T235417_043082_05250D.json", "", 0, mm.S1DN},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data := realItem(t, tt.file)
			sc, err := ParseSTACItem(data)
			if err != nil {
				t.Fatal(err)
			}
			if tt.units != "" {
				if got := sc.Assets[mm.Sentinel1].BackscatterUnits(); got != tt.units {
					t.Errorf("units = %q, want %q", got, tt.units)
				}
				return
			}
			a := sc.Assets[mm.Sentinel2]
			if a.ProcessingBaseline != tt.baseline {
				t.Errorf("processing baseline = %q, want %q", a.ProcessingBaseline, tt.baseline)
			}
			if off, known := a.BOAOffset(); off != tt.offset || !known {
				t.Errorf("BOAOffset() = %v, %v; want %v, true", off, known, tt.offset)
			}
		})
	}
}

func TestSTACItemCollections(t *testing.T) {
	tests := []struct {
		file    string
		scenes  int
		wantErr string // for the Items that cannot be scenes
	}{
		{"itemcollection_pc_search_naip_10items_page1.json", 10, ""},
		{"itemcollection_earthsearch-v0_search_sentinel-s2-l2a-cogs_1item.json", 1, ""},
		// the Landsat Item is refused by name; the Sentinel-2 Item still maps
		{"itemcollection_earthsearch-v1_search_sentinel-2-l2a+landsat-c2-l2_2items.json", 1, "features[1]: STAC Item LC08_L2SP_033032_20231008_02_T1: collection \"landsat-c2-l2\""},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data := realItem(t, tt.file)
			scenes, err := ParseMessage(data)
			if len(scenes) != tt.scenes {
				t.Fatalf("got %d scenes, want %d (err %v)", len(scenes), tt.scenes, err)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatal(err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || !mm.IsPermanent(err)):
				t.Fatalf("error %v, want permanent %q", err, tt.wantErr)
			}
			ids := map[string]bool{}
			for _, sc := range scenes {
				if ids[sc.ID] {
					t.Errorf("duplicate scene id %s", sc.ID)
				}
				ids[sc.ID] = true
			}
		})
	}
}

func TestParseMessageErrors(t *testing.T) {
	tests := []struct{ name, given, want string }{
		{"not json", `[1, 2`, "not a JSON object"},
		{"empty collection", `{"type": "FeatureCollection", "features": []}`, "holds no Items"},
		{"item without assets", `{"type": "Feature", "stac_version": "1.0.0", "id": "x", "assets": {}}`, "assets: the Item has no assets"},
		{"item without id", `{"type": "Feature", "stac_version": "1.0.0", "assets": {"image": {"href": "a.tif"}}}`, "id: required"},
		{"unknown collection", `{"type": "Feature", "stac_version": "1.0.0", "id": "x", "collection": "modis", "assets": {"data": {"href": "a.tif"}}}`, `collection "modis"`},
		{"naip without image", `{"type": "Feature", "stac_version": "1.0.0", "id": "x", "collection": "naip", "assets": {"thumbnail": {"href": "a.jpg"}}}`, "assets.image"},
		{"s2 without bands", `{"type": "Feature", "stac_version": "1.0.0", "id": "x", "collection": "sentinel-2-l2a", "assets": {"visual": {"href": "a.tif"}}}`, "no Sentinel-2 band assets"},
		{"scene message", `{"id": "a b"}`, "id: must be"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseMessage([]byte(tt.given))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !mm.IsPermanent(err) {
				t.Fatalf("error %v, want permanent %q", err, tt.want)
			}
		})
	}
}

func FuzzParseMessage(f *testing.F) {
	for _, name := range []string{
		"pc_naip_fl_m_2608004_nw_17_060_20191215_20200113.json",
		"earthsearch-v1_sentinel-2-l2a_S2A_13TDE_20231008_0_L2A.json",
		"pc_sentinel-1-rtc_S1A_IW_GRDH_1SDV_20240419T045839_20240419T045904_053498_067DF2_rtc.json",
		"itemcollection_earthsearch-v1_search_sentinel-2-l2a+landsat-c2-l2_2items.json",
	} {
		data, err := os.ReadFile(testenv.RealData(f, filepath.Join("stac", name)))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"id":"a","assets":{"naip":{"href":"x.tif"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		scenes, err := ParseMessage(data)
		if err != nil && !mm.IsPermanent(err) {
			t.Fatalf("error not permanent: %v", err)
		}
		for _, sc := range scenes {
			if err := sc.Validate(); err != nil {
				t.Fatalf("returned scene does not validate: %v", err)
			}
		}
	})
}

// TestSceneIDsStayDistinct: Item ids that are valid scene ids are kept;
// others are made valid without two becoming one.
func TestSceneIDsStayDistinct(t *testing.T) {
	seen := map[string]string{}
	for _, id := range []string{"tile/1", "tile:1", "tile 1", "tile_1", "a..b", "a_b", ".x.", strings.Repeat("é", 200), strings.Repeat("é", 201), "S2B_MSIL2A_20240101"} {
		got := SceneIDOf(id)
		if !mm.ValidSceneID(got) {
			t.Errorf("SceneIDOf(%q) = %q: not a valid scene id", id, got)
		}
		if other, ok := seen[got]; ok {
			t.Errorf("%q and %q both map to %q", other, id, got)
		}
		seen[got] = id
	}
	if SceneIDOf("tile_1") != "tile_1" || SceneIDOf("S2B_MSIL2A_20240101") != "S2B_MSIL2A_20240101" {
		t.Error("a valid id was changed")
	}
}

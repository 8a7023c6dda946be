// Command imagebuild assembles the mcp-warden container image from staged directories, without a
// container engine: each directory becomes one reproducible layer (sorted entries, one timestamp,
// owner root unless told otherwise, normalized permissions), and go-containerregistry writes the
// image as an OCI image layout and as a `docker save` tarball (for `docker load`, `podman load`,
// `kind load image-archive`, `crane push`).
//
//	imagebuild build SPEC.json   builds the image SPEC describes, prints {"digest": ..., ...}
//	imagebuild verify OCI_DIR    validates the image in an OCI layout (every digest, diff ID and
//	                             size recomputed from the blobs), prints its digest and config
//
// hack/build-image.sh writes the SPEC; the same inputs and epoch give the same image digest.
package main

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// Owner is a numeric uid and gid.
type Owner struct {
	UID int `json:"uid"`
	GID int `json:"gid"`
}

// Layer is one staged directory; paths in Owners and Modes are relative to it ("tmp", "home/nonroot").
type Layer struct {
	Dir       string           `json:"dir"`
	CreatedBy string           `json:"createdBy"`
	Owners    map[string]Owner `json:"owners,omitempty"`
	Modes     map[string]int64 `json:"modes,omitempty"`
}

// Spec is what build reads.
type Spec struct {
	Tag          string    `json:"tag"`
	Epoch        int64     `json:"epoch"`
	OS           string    `json:"os"`
	Architecture string    `json:"architecture"`
	Layers       []Layer   `json:"layers"`
	Config       v1.Config `json:"config"`
	OCIDir       string    `json:"ociDir"`
	Tarball      string    `json:"tarball"`
	WorkDir      string    `json:"workDir"`
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: imagebuild build SPEC.json | imagebuild verify OCI_DIR")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "build":
		err = build(os.Args[2])
	case "verify":
		err = verify(os.Args[2])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "imagebuild: %v\n", err)
		os.Exit(1)
	}
}

func build(specPath string) error {
	raw, err := os.ReadFile(specPath)
	if err != nil {
		return err
	}
	var spec Spec
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		return fmt.Errorf("%s: %w", specPath, err)
	}
	if spec.Tag == "" || spec.OCIDir == "" || spec.Tarball == "" || spec.WorkDir == "" || len(spec.Layers) == 0 {
		return errors.New("the spec needs tag, ociDir, tarball, workDir and at least one layer")
	}
	ref, err := name.ParseReference(spec.Tag)
	if err != nil {
		return fmt.Errorf("tag %q: %w", spec.Tag, err)
	}
	created := v1.Time{Time: time.Unix(spec.Epoch, 0).UTC()}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for i, l := range spec.Layers {
		file := filepath.Join(spec.WorkDir, fmt.Sprintf("layer-%d.tar", i))
		if err := writeLayer(l, spec.Epoch, file); err != nil {
			return fmt.Errorf("layer %s: %w", l.Dir, err)
		}
		layer, err := tarball.LayerFromFile(file, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return fmt.Errorf("layer %s: %w", l.Dir, err)
		}
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:   layer,
			History: v1.History{Created: created, CreatedBy: l.CreatedBy},
		})
		if err != nil {
			return err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS = spec.OS
	cf.Architecture = spec.Architecture
	cf.Created = created
	cf.Config = spec.Config
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	if err := os.RemoveAll(spec.OCIDir); err != nil {
		return err
	}
	p, err := layout.Write(spec.OCIDir, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": ref.Name(),
	})); err != nil {
		return err
	}
	if err := tarball.WriteToFile(spec.Tarball, ref, img); err != nil {
		return err
	}
	// Validated as written: read back from the layout, every digest recomputed from the blobs.
	return verify(spec.OCIDir)
}

// writeLayer writes dir as a tar whose bytes depend only on the files' names, contents, kinds,
// executable bits and link targets: entries in lexical order, every timestamp the epoch, owner
// 0:0 and permissions 0755 / 0644 unless the layer's Owners or Modes say otherwise.
func writeLayer(l Layer, epoch int64, file string) error {
	out, err := os.Create(file)
	if err != nil {
		return err
	}
	defer out.Close()
	tw := tar.NewWriter(out)
	mtime := time.Unix(epoch, 0).UTC()
	seen := map[string]bool{}
	err = filepath.WalkDir(l.Dir, func(path string, d fs.DirEntry, walkErr error) error {
		if walkErr != nil {
			return walkErr
		}
		rel, err := filepath.Rel(l.Dir, path)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		seen[rel] = true
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: rel, ModTime: mtime, Format: tar.FormatPAX}
		switch {
		case info.Mode().IsDir():
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
			hdr.Mode = 0o755
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			hdr.Typeflag = tar.TypeSymlink
			hdr.Linkname = target
			hdr.Mode = 0o777
		case info.Mode().IsRegular():
			hdr.Typeflag = tar.TypeReg
			hdr.Size = info.Size()
			hdr.Mode = 0o644
			if info.Mode()&0o111 != 0 {
				hdr.Mode = 0o755
			}
		default:
			return fmt.Errorf("%s: only directories, regular files and symlinks belong in a layer", rel)
		}
		if o, ok := l.Owners[rel]; ok {
			hdr.Uid, hdr.Gid = o.UID, o.GID
		}
		if m, ok := l.Modes[rel]; ok {
			hdr.Mode = m
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			n, err := io.Copy(tw, f)
			f.Close()
			if err != nil {
				return err
			}
			if n != hdr.Size {
				return fmt.Errorf("%s changed while it was written", rel)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for p := range l.Owners {
		if !seen[p] {
			return fmt.Errorf("owner given for %s, which is not in the layer", p)
		}
	}
	for p := range l.Modes {
		if !seen[p] {
			return fmt.Errorf("mode given for %s, which is not in the layer", p)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return out.Close()
}

func verify(dir string) error {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	if len(im.Manifests) != 1 {
		return fmt.Errorf("%s holds %d manifests, expected one image", dir, len(im.Manifests))
	}
	desc := im.Manifests[0]
	img, err := idx.Image(desc.Digest)
	if err != nil {
		return err
	}
	if err := validate.Image(img); err != nil {
		return err
	}
	return report(img, desc.Annotations["org.opencontainers.image.ref.name"])
}

func report(img v1.Image, ref string) error {
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	var size int64
	for _, l := range layers {
		s, err := l.Size()
		if err != nil {
			return err
		}
		size += s
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"ref":            ref,
		"digest":         digest.String(),
		"layers":         len(layers),
		"compressedSize": size,
		"config":         cf,
	})
}

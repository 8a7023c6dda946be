// Command imagebuild assembles the mcp-warden container image from staged directories, without a
// container engine: each directory becomes one reproducible layer (sorted entries, one timestamp,
// owner root unless told otherwise, normalized permissions); one image per platform, all with the
// same config; go-containerregistry writes them as an OCI image layout holding one image index
// (for `crane push`, `skopeo copy --all`) and as one `docker save` tarball per platform (for
// `docker load`, `podman load`, `kind load image-archive`).
//
// With a Syft binary in the spec, each platform's image is also scanned (from its `docker save`
// tarball) into an SPDX 2.3 SBOM, made reproducible (creation time the epoch, namespace naming the
// image's digest instead of a random UUID), written to sbomDir/sbom-linux-<arch>.spdx.json, and
// attached inside the index as BuildKit attaches `--sbom` attestations: an in-toto statement
// (predicate type https://spdx.dev/Document, subject the platform image's digest) in a manifest of
// platform unknown/unknown, annotated vnd.docker.reference.type=attestation-manifest and
// vnd.docker.reference.digest=<the image>. Runtimes pick their platform and ignore it; Docker
// Scout, `docker buildx imagetools inspect --format '{{json .SBOM}}'` and Trivy read it.
//
//	imagebuild build SPEC.json   builds what SPEC describes, prints {"digest": ..., ...}
//	imagebuild verify OCI_DIR    validates the index in an OCI layout, every image in it (every
//	                             digest, diff ID and size recomputed from the blobs) and every SBOM
//	                             attestation (bytes, subject, SPDX predicate), prints the index
//	                             digest, each platform's digest and config, and the SBOMs
//
// hack/build-image.sh writes the SPEC; the same inputs and epoch give the same image digest.
package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
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

// Platform is one image of the index: its layers and its `docker save` tarball.
type Platform struct {
	OS           string  `json:"os"`
	Architecture string  `json:"architecture"`
	Variant      string  `json:"variant,omitempty"`
	Layers       []Layer `json:"layers"`
	Tarball      string  `json:"tarball"`
}

// Spec is what build reads.
type Spec struct {
	// Syft is the path of a Syft binary: with it, every platform gets an SBOM (see above).
	Syft      string     `json:"syft,omitempty"`
	SBOMDir   string     `json:"sbomDir,omitempty"`
	Tag       string     `json:"tag"`
	Epoch     int64      `json:"epoch"`
	Config    v1.Config  `json:"config"`
	Platforms []Platform `json:"platforms"`
	OCIDir    string     `json:"ociDir"`
	WorkDir   string     `json:"workDir"`
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
	if spec.Tag == "" || spec.OCIDir == "" || spec.WorkDir == "" || len(spec.Platforms) == 0 {
		return errors.New("the spec needs tag, ociDir, workDir and at least one platform")
	}
	ref, err := name.ParseReference(spec.Tag)
	if err != nil {
		return fmt.Errorf("tag %q: %w", spec.Tag, err)
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for i, p := range spec.Platforms {
		if p.OS == "" || p.Architecture == "" || p.Tarball == "" || len(p.Layers) == 0 {
			return fmt.Errorf("platform %d needs os, architecture, tarball and at least one layer", i)
		}
		img, err := platformImage(spec, p, filepath.Join(spec.WorkDir, fmt.Sprintf("platform-%d", i)))
		if err != nil {
			return fmt.Errorf("%s/%s: %w", p.OS, p.Architecture, err)
		}
		if err := tarball.WriteToFile(p.Tarball, ref, img); err != nil {
			return err
		}
		platform := &v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: platform},
		})
		if spec.Syft == "" {
			continue
		}
		att, digest, err := sbomAttestation(spec, ref, p, platform.String(), img)
		if err != nil {
			return fmt.Errorf("%s/%s SBOM: %w", p.OS, p.Architecture, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add: att,
			Descriptor: v1.Descriptor{
				Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"},
				Annotations: map[string]string{
					"vnd.docker.reference.type":   "attestation-manifest",
					"vnd.docker.reference.digest": digest.String(),
				},
			},
		})
	}
	if err := os.RemoveAll(spec.OCIDir); err != nil {
		return err
	}
	l, err := layout.Write(spec.OCIDir, empty.Index)
	if err != nil {
		return err
	}
	if err := l.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": ref.Name(),
	})); err != nil {
		return err
	}
	// Validated as written: read back from the layout, every digest recomputed from the blobs.
	return verify(spec.OCIDir)
}

const (
	inTotoType    = "application/vnd.in-toto+json"
	spdxPredicate = "https://spdx.dev/Document"
)

// sbomAttestation scans one platform's image (its docker tarball) with Syft, writes the SBOM
// (reproducible) to sbomDir, and returns the attestation manifest for the index and the digest of
// the image it describes.
func sbomAttestation(spec Spec, ref name.Reference, p Platform, platform string, img v1.Image) (v1.Image, v1.Hash, error) {
	digest, err := img.Digest()
	if err != nil {
		return nil, digest, err
	}
	raw := p.Tarball + ".spdx.tmp"
	defer os.Remove(raw)
	repo := ref.Context().Name()
	cmd := exec.Command(spec.Syft, "scan", "docker-archive:"+p.Tarball, "--quiet",
		"--source-name", repo, "--source-version", ref.Identifier(), "-o", "spdx-json="+raw)
	cmd.Stderr = os.Stderr
	cmd.Env = append(os.Environ(), "SYFT_CHECK_FOR_APP_UPDATE=false")
	if err := cmd.Run(); err != nil {
		return nil, digest, fmt.Errorf("syft: %w", err)
	}
	b, err := os.ReadFile(raw)
	if err != nil {
		return nil, digest, err
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, digest, err
	}
	info, ok := doc["creationInfo"].(map[string]any)
	if v, _ := doc["spdxVersion"].(string); !ok || !strings.HasPrefix(v, "SPDX-2.") {
		return nil, digest, errors.New("syft did not write an SPDX 2 JSON document")
	}
	info["created"] = time.Unix(spec.Epoch, 0).UTC().Format(time.RFC3339)
	doc["documentNamespace"] = fmt.Sprintf("https://github.com/mcp-warden/mcp-warden/sbom/%s/%s",
		strings.ReplaceAll(platform, "/", "-"), digest.Hex)
	pretty, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, digest, err
	}
	file := filepath.Join(spec.SBOMDir, fmt.Sprintf("sbom-%s-%s.spdx.json", p.OS, p.Architecture))
	if err := os.WriteFile(file, append(pretty, '\n'), 0o644); err != nil {
		return nil, digest, err
	}
	statement, err := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v0.1",
		"predicateType": spdxPredicate,
		"subject": []map[string]any{{
			"name":   fmt.Sprintf("pkg:docker/%s@%s?platform=%s", repo, ref.Identifier(), url.QueryEscape(platform)),
			"digest": map[string]string{"sha256": digest.Hex},
		}},
		"predicate": doc,
	})
	if err != nil {
		return nil, digest, err
	}
	layer := static.NewLayer(statement, inTotoType)
	att := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	att = mutate.ConfigMediaType(att, types.OCIConfigJSON)
	att, err = mutate.Append(att, mutate.Addendum{
		Layer:       layer,
		Annotations: map[string]string{"in-toto.io/predicate-type": spdxPredicate},
	})
	if err != nil {
		return nil, digest, err
	}
	diffID, err := layer.DiffID()
	if err != nil {
		return nil, digest, err
	}
	att, err = mutate.ConfigFile(att, &v1.ConfigFile{
		OS:           "unknown",
		Architecture: "unknown",
		RootFS:       v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{diffID}},
	})
	return att, digest, err
}

// platformImage assembles one platform's image: its layers written under dir, the shared config.
func platformImage(spec Spec, p Platform, dir string) (v1.Image, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	created := v1.Time{Time: time.Unix(spec.Epoch, 0).UTC()}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for i, l := range p.Layers {
		file := filepath.Join(dir, fmt.Sprintf("layer-%d.tar", i))
		if err := writeLayer(l, spec.Epoch, file); err != nil {
			return nil, fmt.Errorf("layer %s: %w", l.Dir, err)
		}
		layer, err := tarball.LayerFromFile(file, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", l.Dir, err)
		}
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:   layer,
			History: v1.History{Created: created, CreatedBy: l.CreatedBy},
		})
		if err != nil {
			return nil, err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS = p.OS
	cf.Architecture = p.Architecture
	cf.Variant = p.Variant
	cf.Created = created
	cf.Config = spec.Config
	return mutate.ConfigFile(img, cf)
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
	root, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return err
	}
	rm, err := root.IndexManifest()
	if err != nil {
		return err
	}
	if len(rm.Manifests) != 1 || rm.Manifests[0].MediaType != types.OCIImageIndex {
		return fmt.Errorf("%s should hold one image index", dir)
	}
	desc := rm.Manifests[0]
	idx, err := root.ImageIndex(desc.Digest)
	if err != nil {
		return err
	}
	// The index's own bytes against its descriptor; each child is validated below (an SBOM
	// attestation by verifyAttestation: validate.Index would take its in-toto layer for a tar).
	raw, err := idx.RawManifest()
	if err != nil {
		return err
	}
	if h, n, _ := v1.SHA256(bytes.NewReader(raw)); h != desc.Digest || n != desc.Size {
		return fmt.Errorf("the index's bytes do not match its descriptor %s", desc.Digest)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	platforms := []map[string]any{}
	sboms := []map[string]any{}
	for _, m := range im.Manifests {
		if m.Platform == nil {
			return fmt.Errorf("manifest %s has no platform", m.Digest)
		}
		if m.Annotations["vnd.docker.reference.type"] == "attestation-manifest" {
			sbom, err := verifyAttestation(idx, m, im.Manifests)
			if err != nil {
				return fmt.Errorf("attestation %s: %w", m.Digest, err)
			}
			sboms = append(sboms, sbom)
			continue
		}
		img, err := idx.Image(m.Digest)
		if err != nil {
			return err
		}
		if err := validate.Image(img); err != nil {
			return fmt.Errorf("%s: %w", m.Platform, err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return err
		}
		if cf.OS != m.Platform.OS || cf.Architecture != m.Platform.Architecture || cf.Variant != m.Platform.Variant {
			return fmt.Errorf("the index says %s, the image config %s/%s/%s", m.Platform, cf.OS, cf.Architecture, cf.Variant)
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
		platforms = append(platforms, map[string]any{
			"platform":       m.Platform.String(),
			"digest":         m.Digest.String(),
			"layers":         len(layers),
			"compressedSize": size,
			"config":         cf,
		})
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"ref":       desc.Annotations["org.opencontainers.image.ref.name"],
		"digest":    desc.Digest.String(),
		"platforms": platforms,
		"sboms":     sboms,
	})
}

// verifyAttestation checks an SBOM attestation of the index: platform unknown/unknown, one in-toto
// layer whose bytes match its digest, a statement whose subject is the image the annotation names
// (an image of this index) and whose predicate is an SPDX 2 document naming that image's digest.
func verifyAttestation(idx v1.ImageIndex, m v1.Descriptor, all []v1.Descriptor) (map[string]any, error) {
	if m.Platform.OS != "unknown" || m.Platform.Architecture != "unknown" {
		return nil, fmt.Errorf("platform %s, not unknown/unknown", m.Platform)
	}
	ref, err := v1.NewHash(m.Annotations["vnd.docker.reference.digest"])
	if err != nil {
		return nil, err
	}
	var subject *v1.Descriptor
	for i := range all {
		if all[i].Digest == ref && all[i].Annotations["vnd.docker.reference.type"] == "" {
			subject = &all[i]
		}
	}
	if subject == nil {
		return nil, fmt.Errorf("it names %s, not an image of the index", ref)
	}
	img, err := idx.Image(m.Digest)
	if err != nil {
		return nil, err
	}
	mf, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	if len(mf.Layers) != 1 || mf.Layers[0].MediaType != inTotoType ||
		mf.Layers[0].Annotations["in-toto.io/predicate-type"] != spdxPredicate {
		return nil, errors.New("not one in-toto layer with an SPDX predicate")
	}
	layer, err := img.LayerByDigest(mf.Layers[0].Digest)
	if err != nil {
		return nil, err
	}
	rc, err := layer.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, err
	}
	if h, n, _ := v1.SHA256(bytes.NewReader(b)); h != mf.Layers[0].Digest || n != mf.Layers[0].Size {
		return nil, fmt.Errorf("layer %s: its bytes do not match", mf.Layers[0].Digest)
	}
	var st struct {
		PredicateType string `json:"predicateType"`
		Subject       []struct {
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
		Predicate struct {
			Version   string `json:"spdxVersion"`
			Namespace string `json:"documentNamespace"`
			Packages  []any  `json:"packages"`
		} `json:"predicate"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	if st.PredicateType != spdxPredicate || len(st.Subject) != 1 || st.Subject[0].Digest["sha256"] != ref.Hex {
		return nil, fmt.Errorf("the statement is not an SPDX document about %s", ref)
	}
	if !strings.HasPrefix(st.Predicate.Version, "SPDX-2.") || !strings.HasSuffix(st.Predicate.Namespace, ref.Hex) {
		return nil, errors.New("the predicate is not an SPDX 2 document naming the image's digest")
	}
	return map[string]any{
		"platform": subject.Platform.String(),
		"subject":  ref.String(),
		"digest":   m.Digest.String(),
		"packages": len(st.Predicate.Packages),
	}, nil
}

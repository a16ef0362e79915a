// Package referrers attaches documents (an SBOM, a provenance statement)
// to an image in a registry as OCI 1.1 referrers: an image manifest with
// an artifactType, an empty config, the document as its one layer, and
// the image as its subject. Pushed with go-containerregistry, which falls
// back to the referrers tag schema (tag sha256-<hex>) where a registry
// has no referrers API.
//
//	d, err := referrers.Attach(ctx, "host/repo", subject, referrers.Artifact{
//		ArtifactType: "application/spdx+json", Payload: doc, Title: "sbom.spdx.json"}, auth)
package referrers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// emptyConfig is the OCI empty descriptor's content ("{}"), the config of
// an artifact manifest (image-spec v1.1, guidance for artifacts).
const emptyMediaType = "application/vnd.oci.empty.v1+json"

// Artifact is a document to attach.
type Artifact struct {
	ArtifactType string // e.g. application/spdx+json; also the layer's media type
	Payload      []byte
	Title        string            // file name (org.opencontainers.image.title on the layer)
	Annotations  map[string]string // on the manifest
}

// manifest is an OCI image manifest with the 1.1 fields.
type manifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     types.MediaType   `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        v1.Descriptor     `json:"config"`
	Layers        []v1.Descriptor   `json:"layers"`
	Subject       *v1.Descriptor    `json:"subject"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

type rawManifest struct{ b []byte }

func (m rawManifest) RawManifest() ([]byte, error)        { return m.b, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// Attach pushes a as a referrer of subject in repository repo (host/name)
// and returns the referrer manifest's digest.
func Attach(ctx context.Context, repo string, subject v1.Descriptor, a Artifact, auth authn.Authenticator) (v1.Hash, error) {
	r, err := name.NewRepository(repo)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("repository %q: %w", repo, err)
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuth(auth)}
	cfg := static.NewLayer([]byte("{}"), emptyMediaType)
	doc := static.NewLayer(a.Payload, types.MediaType(a.ArtifactType))
	for _, l := range []v1.Layer{cfg, doc} {
		if err := remote.WriteLayer(r, l, opts...); err != nil {
			return v1.Hash{}, fmt.Errorf("upload %s blob to %s: %w", a.ArtifactType, repo, err)
		}
	}
	cfgDesc, err := descriptor(cfg, emptyMediaType)
	if err != nil {
		return v1.Hash{}, err
	}
	cfgDesc.Data = []byte("{}")
	docDesc, err := descriptor(doc, a.ArtifactType)
	if err != nil {
		return v1.Hash{}, err
	}
	if a.Title != "" {
		docDesc.Annotations = map[string]string{"org.opencontainers.image.title": a.Title}
	}
	sub := v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}
	b, err := json.Marshal(manifest{
		SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: a.ArtifactType,
		Config: cfgDesc, Layers: []v1.Descriptor{docDesc}, Subject: &sub, Annotations: a.Annotations,
	})
	if err != nil {
		return v1.Hash{}, err
	}
	h, _, err := v1.SHA256(bytes.NewReader(b))
	if err != nil {
		return v1.Hash{}, err
	}
	if err := remote.Put(r.Digest(h.String()), rawManifest{b}, opts...); err != nil {
		return v1.Hash{}, fmt.Errorf("push %s referrer of %s to %s: %w", a.ArtifactType, subject.Digest, repo, err)
	}
	return h, nil
}

func descriptor(l v1.Layer, mt string) (v1.Descriptor, error) {
	d, err := l.Digest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	n, err := l.Size()
	if err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: types.MediaType(mt), Digest: d, Size: n}, nil
}

// Found is one referrer of an image with its document.
type Found struct {
	Digest       v1.Hash
	ArtifactType string
	Annotations  map[string]string
	Title        string
	Payload      []byte
}

// List returns the referrers of the image with digest in repo, with their
// documents; artifactType "" lists all. It reads the referrers API, or the
// referrers tag where the registry has none.
func List(ctx context.Context, repo, digest, artifactType string, auth authn.Authenticator) ([]Found, error) {
	r, err := name.NewRepository(repo)
	if err != nil {
		return nil, fmt.Errorf("repository %q: %w", repo, err)
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuth(auth)}
	idx, err := remote.Referrers(r.Digest(digest), opts...)
	if err != nil {
		return nil, fmt.Errorf("referrers of %s in %s: %w", digest, repo, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var out []Found
	for _, d := range im.Manifests {
		img, err := remote.Image(r.Digest(d.Digest.String()), opts...)
		if err != nil {
			return nil, fmt.Errorf("referrer %s: %w", d.Digest, err)
		}
		m, err := img.Manifest()
		if err != nil {
			return nil, fmt.Errorf("referrer %s: %w", d.Digest, err)
		}
		// The manifest's own artifactType rules (image-spec 1.1); some
		// registries list the config media type instead.
		typ := m.ArtifactType
		if typ == "" {
			typ = d.ArtifactType
		}
		if len(m.Layers) != 1 || artifactType != "" && typ != artifactType {
			continue
		}
		l, err := img.LayerByDigest(m.Layers[0].Digest)
		if err != nil {
			return nil, err
		}
		rc, err := l.Compressed()
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(io.LimitReader(rc, 64<<20))
		rc.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, Found{Digest: d.Digest, ArtifactType: typ, Annotations: m.Annotations,
			Title: m.Layers[0].Annotations["org.opencontainers.image.title"], Payload: b})
	}
	return out, nil
}

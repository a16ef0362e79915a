package ci

import (
	"context"
	"fmt"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/example/sidecar/ci/ecr"
	"github.com/example/sidecar/ci/imagefiles"
)

// candidateImage is what the release reads from the image it releases:
// each platform's files (the sidecar binary, the apk database) and the
// source its labels record.
type candidateImage struct {
	ref   string // repository@digest
	files imagefiles.Files
	src   source
}

// registryAuth is the ECR login as go-containerregistry takes it (the
// referrers and the candidate's files go through it).
func registryAuth(reg *ecr.Registry) authn.Authenticator {
	return &authn.Basic{Username: reg.Username, Password: reg.Password()}
}

// pullCandidate reads the files the release needs out of the candidate in
// ECR, platform by platform, from the registry (only the layers are
// fetched, as the files are read). A commit already in ECR is released as
// that image, so its checks and documents must come from it, not from
// this run's rebuild, which is not byte-identical.
func (r *Runner) pullCandidate(ctx context.Context, reg *ecr.Registry, pushed ecr.Pushed, fallback source) (*candidateImage, error) {
	ref, err := name.NewDigest(reg.URI + "@" + pushed.Digest)
	if err != nil {
		return nil, fmt.Errorf("candidate reference: %w", err)
	}
	r.step("push: reading %s, %s and os-release of each platform from %s", binaryPath, apkDBPath, ref)
	var c *candidateImage
	err = r.onRegistry(ctx, "the registry at "+reg.URI+" (the candidate's files)", func(ctx context.Context) error {
		var err error
		c, err = readCandidate(ctx, reg, ref, pushed, fallback)
		return err
	})
	return c, err
}

// readCandidate is pullCandidate's reading, under its bound.
func readCandidate(ctx context.Context, reg *ecr.Registry, ref name.Digest, pushed ecr.Pushed, fallback source) (*candidateImage, error) {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuth(registryAuth(reg))}
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("read %s from the registry: %w", ref, err)
	}
	var idx v1.ImageIndex
	if desc.MediaType.IsIndex() {
		if idx, err = desc.ImageIndex(); err != nil {
			return nil, fmt.Errorf("read %s: %w", ref, err)
		}
	} else {
		img, err := desc.Image()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", ref, err)
		}
		idx = mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: img})
	}
	files, err := imagefiles.FromIndex(idx, imagePaths()...)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ref, err)
	}
	c := &candidateImage{ref: ref.String(), files: files}
	for _, m := range pushed.Platforms {
		if _, ok := files[m.Platform]; !ok && len(pushed.Platforms) > 1 {
			return nil, fmt.Errorf("read %s: no %s image in it", ref, m.Platform)
		}
	}
	c.src, err = labelSource(idx, fallback)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ref, err)
	}
	return c, nil
}

// labelSource is the source the image's labels record (the Dockerfile
// stamps VERSION, REVISION and CREATED into the OCI labels), read from
// its first platform image; a label it lacks is taken from fallback (this
// run's source: the commit tag says it is the same commit).
func labelSource(idx v1.ImageIndex, fallback source) (source, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return source{}, err
	}
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.OS == "unknown" || !d.MediaType.IsImage() {
			continue
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			return source{}, err
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return source{}, fmt.Errorf("config of %s: %w", d.Digest, err)
		}
		l := cf.Config.Labels
		s := source{gitTag: fallback.gitTag, version: l["org.opencontainers.image.version"], revision: l["org.opencontainers.image.revision"]}
		if s.version == "" {
			s.version = fallback.version
		}
		if s.revision == "" {
			s.revision = fallback.revision
		}
		if s.created, err = time.Parse(time.RFC3339, l["org.opencontainers.image.created"]); err != nil {
			s.created = fallback.created
		}
		return s, nil
	}
	return source{}, fmt.Errorf("no platform image")
}

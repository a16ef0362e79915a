package ecrtest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/ecr/types"

	"github.com/example/sidecar/ci/ecr/ecrtest"
)

// ECR keeps images per repository: an image pushed to one is not found in
// another of the same registry, by DescribeImages or BatchGetImage. A
// stand-in that found it would let a pipeline that looks in the wrong
// repository pass its tests.
func TestImagesArePerRepository(t *testing.T) {
	srv := ecrtest.Start(t, "eu-west-1")
	srv.AddRepository("a", true)
	srv.AddRepository("b", true)
	// No tag: only the pushed manifest can make the digest known.
	d := srv.PushImage("a", "", "application/vnd.oci.image.index.v1+json",
		[]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`))

	client := ecr.New(ecr.Options{
		Region:       srv.Region,
		BaseEndpoint: aws.String(srv.URL),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDSTANDIN", "standin-secret", ""),
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // against a hang only
	defer cancel()
	ids := []types.ImageIdentifier{{ImageDigest: aws.String(d)}}

	for _, tc := range []struct {
		repo  string
		found bool
	}{
		{"a", true},
		{"b", false},
	} {
		t.Run(tc.repo, func(t *testing.T) {
			desc, err := client.DescribeImages(ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String(tc.repo), ImageIds: ids})
			var notFound *types.ImageNotFoundException
			switch {
			case tc.found && (err != nil || len(desc.ImageDetails) != 1 || aws.ToString(desc.ImageDetails[0].ImageDigest) != d):
				t.Errorf("DescribeImages in %s = %+v, %v; want the image", tc.repo, desc, err)
			case !tc.found && !errors.As(err, &notFound):
				t.Errorf("DescribeImages in %s err = %v, want ImageNotFoundException", tc.repo, err)
			}

			got, err := client.BatchGetImage(ctx, &ecr.BatchGetImageInput{RepositoryName: aws.String(tc.repo), ImageIds: ids})
			if err != nil {
				t.Fatalf("BatchGetImage in %s: %v", tc.repo, err)
			}
			if tc.found && (len(got.Images) != 1 || len(got.Failures) != 0) ||
				!tc.found && (len(got.Images) != 0 || len(got.Failures) != 1 || got.Failures[0].FailureCode != types.ImageFailureCodeImageNotFound) {
				t.Errorf("BatchGetImage in %s: %d images, failures %+v; want found=%v", tc.repo, len(got.Images), got.Failures, tc.found)
			}
		})
	}
}

"""The one door to AWS: nothing else in the app imports boto3 or botocore (import-linter checks it).

- `client`: every S3 and HealthImaging call the app makes, with AWS's errors translated into `AwsError`
  subclasses a service can put into words. Its docstring lists the IAM permissions.
- `image_sets`: SearchImageSets and GetImageSetMetadata (gunzipped), for predicting what an import will do.
- `ranged`: the thin ranged-GET path the scanner reads headers through, on botocore's signer.
- `metrics`: the Prometheus counters of every call through this door (`imports_aws_calls_total`,
  `imports_aws_call_seconds`), recorded by `client`.
"""

"""The HTTP face of serve/: the API as a Lambda handler, its schemas, and the local server that stands
in for API Gateway and CloudFront."""

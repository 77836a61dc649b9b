"""VQAv2 and Flickr30k readers (official JSON + images, METER's arrow files), METER's image/text inputs."""


sub-1
	greetingsgreeter


sub-1
	greetingsgreeter

sub-2
orders.orders
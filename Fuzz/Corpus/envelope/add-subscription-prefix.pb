

sub-2
orders.orders
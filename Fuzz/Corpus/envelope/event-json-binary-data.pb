â
$0b6c5d0e-7c1b-4f5e-9a57-6f0f8c1d2e3fdemo1.0"	greetings*
agagentsenderkeydemo*
agagentsendertype	greeter*
	agmsgkind	publish*%
datacontenttypeapplication/json*

dataschema
Greeting2{"name": "Ada"}
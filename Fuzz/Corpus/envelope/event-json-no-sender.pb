ù
$5f2b8c11-0d7e-4a0a-8e52-3b1c9d4e5f60demo1.0"greeting-replies*
agagentsenderkey	unknown*
agagentsendertype	unknown*
	agmsgkind	publish*%
datacontenttypeapplication/json*

dataschemaGreetingReply2{"text": "Hello, Ada!"}
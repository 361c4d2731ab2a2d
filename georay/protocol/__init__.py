"""What the stages say to each other: the questions asked of a vision-language model, the answers
it is trained to give and how they are parsed, the chat messages and SFT conversations that carry
them, and the predictions table every geotagging job writes. No Ray, no torch here."""
